# link_bytes.gp: bytes each network link carried over the run (links.csv),
# the busiest links first. Variables: datafile (rows: rank, "src>dst kind",
# GB), run, n (links drawn).
set title sprintf('Bytes per network link (busiest %d): %s', n, run)
set ylabel 'carried (GB)'
set xlabel 'link (source>destination, kind)'
set style fill solid 0.8 border -1
set boxwidth 0.8
set xtics rotate by -60 font ',8' nomirror
set grid ytics
set yrange [0:*]
set bmargin 8
plot datafile using 1:3:xtic(2) with boxes lc rgb '#3366cc' notitle
