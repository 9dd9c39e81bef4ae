# client/: the C client library (gRPC client core + libuv glue), ikadactl
# and ikada-bench.
noinst_LIBRARIES += libikadaclient.a
libikadaclient_a_SOURCES = \
	client/grpc_client.c client/grpc_client.h \
	client/grpc_client_uv.c client/grpc_client_uv.h
nodist_libikadaclient_a_SOURCES = $(PROTO_H)

if HAVE_CMOCKA
check_PROGRAMS += tests/unit/test_grpc_client
TESTS += tests/unit/test_grpc_client
tests_unit_test_grpc_client_SOURCES = tests/unit/test_grpc_client.c
tests_unit_test_grpc_client_CFLAGS = $(AM_CFLAGS) $(CMOCKA_CFLAGS)
tests_unit_test_grpc_client_LDADD = libikadaclient.a libikada.a libikadapb.a \
	$(IKADA_LIBS) $(CMOCKA_LIBS)
endif
