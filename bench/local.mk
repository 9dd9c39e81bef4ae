# bench/: ikada-bench and measurement programs.

# snapstall: loop stall while a raft snapshot is taken, synchronous encode
# versus a store view encoded on another thread (1M keys by default).
# Makefile.am does not initialize noinst_PROGRAMS, so this is its first
# assignment; use += once Makefile.am has "noinst_PROGRAMS =".
noinst_PROGRAMS = bench/snapstall
bench_snapstall_SOURCES = bench/snapstall.c
bench_snapstall_LDADD = libikada.a libikadaclient.a libikadapb.a $(IKADA_LIBS)
