"""Speed benchmarks of fvlib (a package so `benchmarks.common` wins over any installed `benchmarks`)."""
