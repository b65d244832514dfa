# One grouped bar chart per figure for bench/results (called by bench/report.py).
# Variables (gnuplot -e): datafile, outfile, ptitle, ylabel, servers (space-separated).
# datafile: one line per group: "label" then median min max for each server, in the
# order of `servers`; NaN where a server has no figure (the bar is left out).
set terminal pngcairo size 1000,520 noenhanced font "sans,10"
set output outfile
set title ptitle
set ylabel ylabel
set style data histogram
# Bars are the medians; the error bars span min..max of the runs.
set style histogram errorbars gap 2 lw 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set key outside right top vertical
set grid ytics
set yrange [0:*]
set xtics nomirror
set datafile missing "NaN"
n = words(servers)
plot for [i=1:n] datafile using (column(3*i-1)):(column(3*i)):(column(3*i+1)):xtic(1) \
     title word(servers, i)
