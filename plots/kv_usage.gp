# kv_usage.gp: KV cache blocks in use over simulated time, per instance.
# Variables: datafile (one block per instance, separated by two blank
# lines; columns 1 time_s, 2 running, 3 waiting, 4 kv_used, 5 kv_free,
# 6 kv_lent, 7 kv_borrowed, 8 colour index), nids, ids (instance ids, only
# when nids <= 12), run. Beyond 12 instances one pass draws every
# instance in cycling colours without a legend: a legend of thousands is
# unreadable, and a pass per instance would take time quadratic in them.
set title sprintf('KV cache blocks in use per instance (%d instances): %s', nids, run)
set xlabel 'simulated time (s)'
set ylabel 'KV blocks used (blocks)'
set grid
set key outside right top
if (nids <= 12) {
  plot for [i=1:nids] datafile index (i-1) using 1:4 with steps lw 2 title sprintf('instance %s', word(ids, i))
} else {
  plot datafile using 1:4:8 with lines lc variable notitle
}
