# Renders the CSV written by procpool-leaky-native into an SVG:
#   gnuplot -e "csv='leak-thread-vs-process.csv'; out='docs/img/leak-thread-vs-process.svg'" \
#           examples/leaky_native/plot.gnuplot
set terminal svg size 820,420 dynamic font "sans,12" background rgb "white"
set output out
set datafile separator ","
set key top left
set grid ytics lc rgb "#dddddd"
set xlabel "request"
set ylabel "resident memory (MiB)"
set title "A leaking native call: threads in the host vs. procpool workers"
plot csv using (strcol(1) eq "threads" ? $2 : 1/0):3 skip 1 with linespoints lw 2 pt 7 lc rgb "#c0392b" title "host RSS, threads", \
     csv using (strcol(1) eq "procpool" ? $2 : 1/0):3 skip 1 with linespoints lw 2 pt 7 lc rgb "#2471a3" title "host RSS, procpool", \
     csv using (strcol(1) eq "procpool" ? $2 : 1/0):4 skip 1 with linespoints lw 1 pt 6 dt 2 lc rgb "#7fb3d5" title "worker RSS, procpool (recycled)"
