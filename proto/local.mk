# etcd-wire-compatible protobuf definitions, compiled by protoc-c at build time.
PROTO_FILES = proto/kv.proto proto/auth.proto proto/rpc.proto \
	proto/v3lock.proto proto/v3election.proto proto/internal.proto
# Spelled out: automake must see the object names when it runs.
PROTO_C = proto/kv.pb-c.c proto/auth.pb-c.c proto/rpc.pb-c.c \
	proto/v3lock.pb-c.c proto/v3election.pb-c.c proto/internal.pb-c.c
PROTO_H = proto/kv.pb-c.h proto/auth.pb-c.h proto/rpc.pb-c.h \
	proto/v3lock.pb-c.h proto/v3election.pb-c.h proto/internal.pb-c.h
EXTRA_DIST += $(PROTO_FILES)
BUILT_SOURCES += $(PROTO_C) $(PROTO_H)
CLEANFILES += $(PROTO_C) $(PROTO_H) proto/.stamp

proto/.stamp: $(PROTO_FILES)
	$(AM_V_GEN)$(MKDIR_P) proto && \
	$(PROTOC_C) --c_out=proto -I$(top_srcdir)/proto $(PROTO_FILES:%=$(top_srcdir)/%) && \
	touch $@
$(PROTO_C) $(PROTO_H): proto/.stamp

noinst_LIBRARIES += libikadapb.a
nodist_libikadapb_a_SOURCES = $(PROTO_C) $(PROTO_H)
libikadapb_a_CFLAGS = $(AM_CFLAGS) -Wno-missing-prototypes -Wno-unused-parameter
