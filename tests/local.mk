# tests/: unit tests (cmocka, one binary per module) and black-box tests that
# drive the real binaries with real clients.
UNIT_LDADD = libikada.a libikadaclient.a libikadapb.a $(IKADA_LIBS) $(CMOCKA_LIBS)
UNIT_CFLAGS = $(AM_CFLAGS) $(CMOCKA_CFLAGS)

if HAVE_CMOCKA
UNIT_TESTS = \
	tests/unit/test_btree \
	tests/unit/test_mvcc \
	tests/unit/test_mvcc_view \
	tests/unit/test_kv \
	tests/unit/test_lease \
	tests/unit/test_grpc \
	tests/unit/test_grpc_frame \
	tests/unit/test_config \
	tests/unit/test_snapshot \
	tests/unit/test_ids \
	tests/unit/test_meta \
	tests/unit/test_peer_uv \
	tests/unit/test_compactor \
	tests/unit/test_watch
check_PROGRAMS += $(UNIT_TESTS)
TESTS += $(UNIT_TESTS)
tests_unit_test_btree_SOURCES = tests/unit/test_btree.c
tests_unit_test_btree_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_btree_LDADD = $(UNIT_LDADD)
tests_unit_test_mvcc_SOURCES = tests/unit/test_mvcc.c
tests_unit_test_mvcc_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_mvcc_LDADD = $(UNIT_LDADD)
tests_unit_test_mvcc_view_SOURCES = tests/unit/test_mvcc_view.c
tests_unit_test_mvcc_view_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_mvcc_view_LDADD = $(UNIT_LDADD)
tests_unit_test_kv_SOURCES = tests/unit/test_kv.c
tests_unit_test_kv_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_kv_LDADD = $(UNIT_LDADD)
tests_unit_test_lease_SOURCES = tests/unit/test_lease.c
tests_unit_test_lease_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_lease_LDADD = $(UNIT_LDADD)
tests_unit_test_grpc_SOURCES = tests/unit/test_grpc.c
tests_unit_test_grpc_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_grpc_LDADD = $(UNIT_LDADD)
tests_unit_test_grpc_frame_SOURCES = tests/unit/test_grpc_frame.c \
	tests/unit/grpc_test_util.h
tests_unit_test_grpc_frame_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_grpc_frame_LDADD = $(UNIT_LDADD)
tests_unit_test_config_SOURCES = tests/unit/test_config.c
tests_unit_test_config_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_config_LDADD = $(UNIT_LDADD)
tests_unit_test_snapshot_SOURCES = tests/unit/test_snapshot.c
tests_unit_test_snapshot_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_snapshot_LDADD = $(UNIT_LDADD)
tests_unit_test_ids_SOURCES = tests/unit/test_ids.c
tests_unit_test_ids_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_ids_LDADD = $(UNIT_LDADD)
tests_unit_test_meta_SOURCES = tests/unit/test_meta.c
tests_unit_test_meta_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_meta_LDADD = $(UNIT_LDADD)
tests_unit_test_peer_uv_SOURCES = tests/unit/test_peer_uv.c
tests_unit_test_peer_uv_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_peer_uv_LDADD = $(UNIT_LDADD)
tests_unit_test_compactor_SOURCES = tests/unit/test_compactor.c
tests_unit_test_compactor_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_compactor_LDADD = $(UNIT_LDADD)
tests_unit_test_watch_SOURCES = tests/unit/test_watch.c
tests_unit_test_watch_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_watch_LDADD = $(UNIT_LDADD)
endif

# Black-box tests: shell scripts that start ./ikada (and real etcd) on
# loopback and drive them with real clients.
INTEGRATION_TESTS = tests/integration/flags.sh tests/integration/durability.sh tests/integration/etcdctl_diff.sh tests/integration/etcdctl_diff_cluster.sh tests/integration/ikadactl_diff.sh tests/integration/ikadactl_cluster.sh tests/integration/client_pkgconfig.sh tests/integration/snapshot_restore.sh tests/integration/ikadactl_auth.sh
TESTS += $(INTEGRATION_TESTS)
EXTRA_DIST += $(INTEGRATION_TESTS) tests/integration/lib.sh \
	tests/integration/normalize.py tests/integration/durability_load.py \
	tests/integration/selftest.sh
CLUSTER_TESTS = tests/integration/cluster_failover.sh tests/integration/cluster_catchup.sh tests/integration/cluster_five.sh tests/integration/cluster_follower_ops.sh tests/integration/cluster_membership.sh
TESTS += $(CLUSTER_TESTS)
EXTRA_DIST += $(CLUSTER_TESTS) tests/integration/cluster_lib.sh tests/integration/cluster_load.py
WATCH_LEASE_TESTS = tests/integration/watch_clients.sh tests/integration/watch_stress.sh tests/integration/lease_failover.sh tests/integration/watch_memory.sh
TESTS += $(WATCH_LEASE_TESTS)
EXTRA_DIST += $(WATCH_LEASE_TESTS) tests/integration/wl_client.py
# v3lock/v3election: unit test, and the black-box test with its gRPC client.
if HAVE_CMOCKA
check_PROGRAMS += tests/unit/test_v3lock
TESTS += tests/unit/test_v3lock
tests_unit_test_v3lock_SOURCES = tests/unit/test_v3lock.c
tests_unit_test_v3lock_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_v3lock_LDADD = $(UNIT_LDADD)
endif
check_PROGRAMS += tests/integration/lock_client
tests_integration_lock_client_SOURCES = tests/integration/lock_client.c
tests_integration_lock_client_LDADD = libikadaclient.a libikada.a \
	libikadapb.a $(IKADA_LIBS)
TESTS += tests/integration/lock_elect.sh
EXTRA_DIST += tests/integration/lock_elect.sh
TESTS_ENVIRONMENT = top_builddir=$(abs_top_builddir) top_srcdir=$(abs_top_srcdir); export top_builddir top_srcdir;
