# sweep_throughput.gp: output throughput against a swept key, one curve per
# series, each point the mean over seeds.
# Variables: datafile (one block per series: 1 x, 2 throughput_tok_s,
# 3 ttft_s p99, 4 tpot_s p99, 5 runs averaged), nseries, title1..titleN,
# xlabel, run.
set title sprintf('Output throughput (mean over seeds): %s', run)
set xlabel xlabel
set ylabel 'output throughput (tokens/s)'
set grid
set key top left box opaque
set offsets graph 0.02, graph 0.02, graph 0.05, 0
plot for [i=1:nseries] datafile index (i-1) using 1:2 with linespoints lw 2 pt 7 title value(sprintf('title%d', i))
