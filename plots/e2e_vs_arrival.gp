# e2e_vs_arrival.gp: end-to-end latency of each completed request against
# its arrival time. Variables: datafile (1 arrival_s, 2 e2e_s), n, run.
set title sprintf('End-to-end latency by arrival time (%d completed requests): %s', n, run)
set xlabel 'arrival time (s)'
set ylabel 'E2E latency (s)'
set grid
set key top left
plot datafile using 1:2 with points pt 7 ps 0.5 title 'completed request'
