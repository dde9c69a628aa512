"""hayaku's own measurements: interleaved runs, medians and ratios, tables under results/."""
