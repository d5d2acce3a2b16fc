# compare_cdf.gp: one latency metric's CDF for several runs on one chart.
# Variables: datafile (one block per run: 1 value in s, 2 fraction of
# requests <= value), nseries, title1..titleN (run names), metric, run.
set title sprintf('CDF of %s, completed requests: %s', metric, run)
set xlabel sprintf('%s (s)', metric)
set ylabel 'fraction of requests'
set yrange [0:1.02]
# Latencies span decades (a tail of queued requests): log x when they do.
stats datafile using 1 nooutput
if (STATS_min > 0 && STATS_max >= 100 * STATS_min) {
  set logscale x
} else {
  set xrange [0:*]
  set offsets 0, graph 0.02, 0, 0
}
set grid
set key bottom right box opaque
plot for [i=1:nseries] datafile index (i-1) using 1:2 with steps lw 2 title value(sprintf('title%d', i))
