# kv_borrowing.gp: KV blocks lent (solid) and borrowed (dashed) over time,
# per instance. Variables and data as kv_usage.gp.
set title sprintf('KV blocks lent (solid) and borrowed (dashed) per instance: %s', run)
set xlabel 'simulated time (s)'
set ylabel 'KV blocks (blocks)'
# all zero without borrowing: give the axis a height
stats datafile using ($6 + $7) nooutput
set yrange [0:(STATS_max > 0 ? 1.05 * STATS_max : 1)]
set grid
set key outside right top
if (nids <= 12) {
  plot for [i=1:nids] datafile index (i-1) using 1:6 with steps lw 2 lc i title sprintf('lent by %s', word(ids, i)), \
       for [i=1:nids] datafile index (i-1) using 1:7 with steps lw 2 dt 2 lc i title sprintf('borrowed by %s', word(ids, i))
} else {
  plot datafile using 1:6:8 with lines lc variable notitle, \
       datafile using 1:7:8 with lines dt 2 lc variable notitle
}
