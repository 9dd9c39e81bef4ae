# client/: the C client library (gRPC client core + libuv glue), ikadactl
# and ikada-bench.
noinst_LIBRARIES += libikadaclient.a
libikadaclient_a_SOURCES = \
	client/grpc_client.c client/grpc_client.h \
	client/grpc_client_uv.c client/grpc_client_uv.h \
	client/ikclient.c client/ikclient.h
nodist_libikadaclient_a_SOURCES = $(PROTO_H)

# The installed client library: the same client sources plus what they need
# from the rest of the tree (server/errors.c, the generated protobuf code),
# so that -likada-client is all a program needs besides libuv, protobuf-c
# and nghttp2 (see client/ikada-client.pc.in). The in-tree programs keep
# linking libikadaclient.a + libikada.a + libikadapb.a.
lib_LIBRARIES = libikada-client.a
libikada_client_a_SOURCES = $(libikadaclient_a_SOURCES) \
	server/errors.c server/errors.h \
	server/grpc_frame.c server/grpc_frame.h \
	server/uvwrite.c server/uvwrite.h
nodist_libikada_client_a_SOURCES = $(PROTO_H) \
	proto/kv.pb-c.c proto/auth.pb-c.c proto/rpc.pb-c.c \
	proto/v3lock.pb-c.c proto/v3election.pb-c.c
libikada_client_a_CFLAGS = $(AM_CFLAGS) -Wno-missing-prototypes \
	-Wno-unused-parameter

ikadaincdir = $(includedir)/ikada
nobase_ikadainc_HEADERS = client/ikclient.h client/grpc_client.h \
	client/grpc_client_uv.h server/grpc.h server/errors.h
nobase_nodist_ikadainc_HEADERS = proto/kv.pb-c.h proto/auth.pb-c.h \
	proto/rpc.pb-c.h proto/v3lock.pb-c.h proto/v3election.pb-c.h

pkgconfigdir = $(libdir)/pkgconfig
pkgconfig_DATA = client/ikada-client.pc
EXTRA_DIST += client/ikada-client.pc.in
CLEANFILES += client/ikada-client.pc
# Paths under the prefix are written relative to ${prefix} so the file can
# be relocated (pkg-config --define-prefix / --define-variable=prefix=...).
client/ikada-client.pc: client/ikada-client.pc.in Makefile
	$(AM_V_GEN)$(MKDIR_P) client && \
	p='$(prefix)'; ep='$(exec_prefix)'; ld='$(libdir)'; id='$(includedir)'; \
	case $$ep in "$$p"|"$$p"/*) ep="\$${prefix}$${ep#"$$p"}";; esac; \
	case $$ld in '$(exec_prefix)'|'$(exec_prefix)'/*) \
		ld="\$${exec_prefix}$${ld#'$(exec_prefix)'}";; esac; \
	case $$id in "$$p"|"$$p"/*) id="\$${prefix}$${id#"$$p"}";; esac; \
	sed -e "s|@prefix[@]|$$p|g" -e "s|@exec_prefix[@]|$$ep|g" \
		-e "s|@libdir[@]|$$ld|g" -e "s|@includedir[@]|$$id|g" \
		-e 's|@PACKAGE_VERSION[@]|$(PACKAGE_VERSION)|g' \
		$(srcdir)/client/ikada-client.pc.in > $@

if HAVE_CMOCKA
check_PROGRAMS += tests/unit/test_grpc_client
TESTS += tests/unit/test_grpc_client
tests_unit_test_grpc_client_SOURCES = tests/unit/test_grpc_client.c
tests_unit_test_grpc_client_CFLAGS = $(AM_CFLAGS) $(CMOCKA_CFLAGS)
tests_unit_test_grpc_client_LDADD = libikadaclient.a libikada.a libikadapb.a \
	$(IKADA_LIBS) $(CMOCKA_LIBS)

check_PROGRAMS += tests/unit/test_ikclient
TESTS += tests/unit/test_ikclient
tests_unit_test_ikclient_SOURCES = tests/unit/test_ikclient.c
tests_unit_test_ikclient_CFLAGS = $(AM_CFLAGS) $(CMOCKA_CFLAGS)
tests_unit_test_ikclient_LDFLAGS = $(AM_LDFLAGS) \
	-Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=free
tests_unit_test_ikclient_LDADD = libikadaclient.a libikada.a libikadapb.a \
	$(IKADA_LIBS) $(CMOCKA_LIBS)
endif

# ikadactl: the etcdctl-compatible CLI (client/ctl.h), on the client library.
bin_PROGRAMS += ikadactl
ikadactl_SOURCES = client/ikadactl.c client/ctl.c client/ctl.h \
	client/ctl_kv.c client/ctl_lease.c client/ctl_cluster.c \
	client/ctl_lock.c client/ctl_check.c client/ctl_snapshot.c
nodist_ikadactl_SOURCES = $(PROTO_H)
ikadactl_LDADD = libikadaclient.a libikada.a libikadapb.a $(IKADA_LIBS) -lm
