# capacity.gp: capacity curves, instances needed (or the highest arrival
# rate) against the SLO bound, one curve per series.
# Variables: datafile (one block per series: 1 slo_s, 2 value), nseries,
# title1..titleN, ylabel, run.
set title sprintf('Capacity against the SLO: %s', run)
set xlabel 'SLO bound on the latency percentile (s)'
set ylabel ylabel
set grid
set key top right box opaque
set offsets graph 0.03, graph 0.03, graph 0.08, graph 0.03
plot for [i=1:nseries] datafile index (i-1) using 1:2 with linespoints lw 2 pt 7 title value(sprintf('title%d', i))
