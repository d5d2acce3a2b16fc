# sweep_latency.gp: TTFT p99 (top) and TPOT p99 (bottom) against a swept
# key, log scale (latency grows by orders of magnitude past saturation).
# Variables and data as sweep_throughput.gp.
set multiplot layout 2,1 title sprintf('p99 latency (mean over seeds): %s', run)
set grid
set logscale y
set offsets graph 0.02, graph 0.02, 0, 0
# One legend, in the top panel's lower right (latency is low there at
# high rates only when nothing saturates; the colours say the same below).
set key bottom right box opaque
set ylabel 'TTFT p99 (s)'
plot for [i=1:nseries] datafile index (i-1) using 1:3 with linespoints lw 2 pt 7 title value(sprintf('title%d', i))
set xlabel xlabel
set ylabel 'TPOT p99 (ms)'
unset key
plot for [i=1:nseries] datafile index (i-1) using 1:($4 * 1000) with linespoints lw 2 pt 7 title value(sprintf('title%d', i))
unset multiplot
