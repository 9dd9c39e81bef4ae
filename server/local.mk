# server/: the ikada server. Everything but main.c goes into libikada.a so the
# unit tests link the same objects the binary runs.
noinst_LIBRARIES += libikada.a
libikada_a_SOURCES = \
	server/errors.c server/errors.h \
	server/log.c server/log.h \
	server/btree.c server/btree.h \
	server/mvcc.c server/mvcc.h \
	server/kv.c server/kv.h \
	server/grpc.c server/grpc.h \
	server/grpc_frame.c server/grpc_frame.h \
	server/uvwrite.c server/uvwrite.h \
	server/grpc_uv.c server/grpc_uv.h \
	server/config.c server/config.h \
	server/ids.c server/ids.h \
	server/meta.c server/meta.h \
	server/node.c server/node.h \
	server/peer_uv.c server/peer_uv.h \
	server/service.c server/service.h \
	server/compactor.c server/compactor.h \
	server/lease.c server/lease.h \
	server/watch.c server/watch.h \
	server/history.c server/history.h \
	server/v3lock.c server/v3lock.h \
	server/v3lock_uv.c server/v3lock_uv.h \
	snapshot/snapshot.c snapshot/snapshot.h \
	snapshot/snapfile.c snapshot/snapfile.h
nodist_libikada_a_SOURCES = $(PROTO_H)

bin_PROGRAMS += ikada
ikada_SOURCES = server/main.c
ikada_LDADD = libikada.a libikadaclient.a libikadapb.a $(IKADA_LIBS)
