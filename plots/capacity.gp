# capacity.gp: capacity curves, instances needed (or the highest arrival
# rate) against the SLO bound, one curve per series.
# Variables: datafile (one block per series: 1 slo_s, 2 value), nseries,
# title1..titleN, xlabel (what the bound is on, with its unit), ylabel,
# run. Bounds spanning a decade or more get a log x axis.
set title sprintf('Capacity against the SLO: %s', run)
set xlabel xlabel
set ylabel ylabel
set grid
set key below
stats datafile using 1 nooutput
if (STATS_min > 0 && STATS_max >= 10 * STATS_min) {
  set logscale x
  set xrange [STATS_min / 1.5 : STATS_max * 1.5]
} else {
  set offsets graph 0.03, graph 0.03, 0, 0
}
set yrange [0:*]
set offsets 0, 0, graph 0.08, 0
plot for [i=1:nseries] datafile index (i-1) using 1:2 with linespoints lw 2 pt 7 title value(sprintf('title%d', i))
