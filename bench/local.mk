# bench/: ikada-bench and measurement programs.

# snapstall: loop stall while a raft snapshot is taken, synchronous encode
# versus a store view encoded on another thread (1M keys by default).
# Makefile.am does not initialize noinst_PROGRAMS, so this is its first
# assignment; use += once Makefile.am has "noinst_PROGRAMS =".
noinst_PROGRAMS = bench/snapstall
bench_snapstall_SOURCES = bench/snapstall.c
bench_snapstall_LDADD = libikada.a libikadaclient.a libikadapb.a $(IKADA_LIBS)

# ikada-bench: etcd-benchmark-style load tool for any etcd v3 endpoint
# (bench/bench.c), with its report module (bench/report.[ch]).
bin_PROGRAMS += ikada-bench
ikada_bench_SOURCES = bench/bench.c bench/report.c bench/report.h
nodist_ikada_bench_SOURCES = $(PROTO_H)
ikada_bench_LDADD = libikadaclient.a libikada.a libikadapb.a $(IKADA_LIBS) -lm

if HAVE_CMOCKA
check_PROGRAMS += tests/unit/test_report
TESTS += tests/unit/test_report
tests_unit_test_report_SOURCES = tests/unit/test_report.c bench/report.c \
	bench/report.h
tests_unit_test_report_CFLAGS = $(AM_CFLAGS) $(CMOCKA_CFLAGS)
tests_unit_test_report_LDADD = libikada.a $(CMOCKA_LIBS) -lm
endif

# A few seconds of ikada-bench put/range against one ikada member.
TESTS += tests/integration/bench_smoke.sh
EXTRA_DIST += tests/integration/bench_smoke.sh bench/compare.sh bench/RESULTS.md \
	bench/stall.sh bench/latency.png

# memstore: bytes per key of the mvcc store alone (bench/RESULTS.md,
# "Memory at 1M keys").
noinst_PROGRAMS += bench/memstore
bench_memstore_SOURCES = bench/memstore.c
bench_memstore_LDADD = libikada.a
