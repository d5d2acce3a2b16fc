# terminal.gp: the output terminal for every plot of one `infsim plot` run.
# `svg` (0 or 1) is set before. pngcairo draws anti-aliased lines; libgd's
# png is the fallback where gnuplot was built without cairo.
if (svg) {
  set terminal svg size 1000,600 dynamic noenhanced background rgb 'white' font 'Sans,12'
} else {
  if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
    set terminal pngcairo size 1000,600 noenhanced background rgb 'white' font 'Sans,11'
  } else {
    set terminal png size 1000,600
  }
}
