# etcd-wire-compatible protobuf definitions, compiled by protoc-c at build time.
PROTO_FILES = proto/kv.proto proto/auth.proto proto/rpc.proto \
	proto/v3lock.proto proto/v3election.proto proto/internal.proto
PROTO_C = $(PROTO_FILES:proto/%.proto=proto/%.pb-c.c)
PROTO_H = $(PROTO_FILES:proto/%.proto=proto/%.pb-c.h)
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
