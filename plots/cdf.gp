# cdf.gp: the empirical CDF of one latency metric of a run.
# Variables: datafile (1 value in s, 2 fraction of requests <= value, as
# steps from (min, 0)), metric (its name), n (requests), run.
set title sprintf('CDF of %s over %d completed requests: %s', metric, n, run)
set xlabel sprintf('%s (s)', metric)
set ylabel 'fraction of requests'
set yrange [0:1.02]
set offsets graph 0.02, graph 0.02, 0, 0
set xrange [0:*]
set grid
set key bottom right
plot datafile using 1:2 with steps lw 2 title metric
