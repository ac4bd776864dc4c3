"""The lab: the demo, the benches (paper, cross-family, regime map, perf), the theory lab, their analyses
and their reports, and the `prefixrl` program that puts them beside the library's stages. It imports the
library (`prefixrl`); the library never imports it."""
