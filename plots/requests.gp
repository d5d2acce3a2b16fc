# requests.gp: running (top) and waiting (bottom) requests over time, per
# instance. Variables and data as kv_usage.gp.
set multiplot layout 2,1 title sprintf('Requests per instance: %s', run)
set grid
set key outside right top
set ylabel 'running (requests)'
if (nids <= 12) {
  plot for [i=1:nids] datafile index (i-1) using 1:2 with steps lw 2 title sprintf('instance %s', word(ids, i))
} else {
  plot datafile using 1:2:8 with lines lc variable notitle
}
set ylabel 'waiting (requests)'
set xlabel 'simulated time (s)'
if (nids <= 12) {
  plot for [i=1:nids] datafile index (i-1) using 1:3 with steps lw 2 title sprintf('instance %s', word(ids, i))
} else {
  plot datafile using 1:3:8 with lines lc variable notitle
}
unset multiplot
