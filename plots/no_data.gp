# no_data.gp: what a plot shows when its data set is empty (gnuplot refuses
# to plot no data, and an absent file would look like a failure).
# Variables: what (the plot's subject), run (its source, for the title).
set title sprintf('%s: %s', what, run)
set label 1 'no data' at graph 0.5, 0.5 center
unset xtics
unset ytics
plot [0:1] [0:1] NaN notitle
