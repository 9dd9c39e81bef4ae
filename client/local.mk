# client/: the C client library (gRPC client core + libuv glue), ikadactl
# and ikada-bench.
