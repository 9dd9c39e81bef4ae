# bench/: ikada-bench and measurement programs.
