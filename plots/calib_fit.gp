# calib_fit.gp: calibration fits of one profile, model and TP degree, a
# panel per kernel: measured medians (filled points) and the fitted curve
# (lines; one colour per slice of the other variables), log axes.
# Variables: datafile (blocks: 1 x, 2 measured_ns or NaN, 3 fitted_ns; a
# blank line inside a block starts the dense curve), npanels, and per
# panel i: pI_first (first block, 0-based), pI_n (blocks), pI_curve (1:
# draw the fit as lines; 0: as open circles at the measured points), pI_title
# (kernel), pI_xlabel (its aggregate); sJ (label of block J-1), run.
if (svg) {
  set terminal svg size 1500,1150 dynamic noenhanced background rgb 'white' font 'Sans,11'
} else {
  set terminal pngcairo size 1500,1150 noenhanced background rgb 'white' font 'Sans,10'
}
set multiplot layout 3,3 title sprintf("Calibration: measured (points) and fitted curves (lines): %s", run)
set logscale xy
set grid
set key top left samplen 1.5 spacing 0.9 font ',8'
set ylabel 'time per layer (us)'
do for [p=1:npanels] {
  f = value(sprintf('p%d_first', p))
  m = value(sprintf('p%d_n', p))
  set title value(sprintf('p%d_title', p))
  set xlabel value(sprintf('p%d_xlabel', p))
  curve = value(sprintf('p%d_curve', p))
  if (m > 1) {
    plot for [j=f:f+m-1] datafile index j using 1:($2/1000) with points pt 7 ps 0.6 lc (j-f+1) \
           title value(sprintf('s%d', j+1)), \
         for [j=f:f+m-1] datafile index j using 1:($3/1000) with lines lw 1.5 lc (j-f+1) notitle
  }
  if (m == 1 && curve) {
    plot datafile index f using 1:($2/1000) with points pt 7 ps 0.7 lc 1 title 'measured (median)', \
         datafile index f using 1:($3/1000) with lines lw 1.5 lc rgb '#202020' title 'fitted'
  }
  if (m == 1 && !curve) {
    plot datafile index f using 1:($2/1000) with points pt 7 ps 0.7 lc 1 title 'measured (median)', \
         datafile index f using 1:($3/1000) with points pt 6 ps 1.1 lc rgb '#202020' title 'fitted, at each point'
  }
}
unset multiplot
