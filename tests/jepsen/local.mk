# tests/jepsen/: Jepsen-style fault tests (network namespace per member,
# nemesis, register/set/watch/lock workloads, linearizability checker).
#
#   make jepsen       10 minutes (JEPSEN_TIME) with every fault against
#                     ikada, then the same against real etcd (the baseline
#                     that validates the harness); fails on any anomaly.
#                     Results in jepsen-results/{ikada,etcd}/.
#   make jepsen-bugs  60 s (JEPSEN_BUG_TIME) per test-only bug mode of
#                     ikada (IKADA_TEST_BUG); fails unless every run
#                     reports anomalies. Results in jepsen-results/bug-*/.
#
# make check runs the checker's unit tests and a 60 s smoke run (SKIP, 77,
# where network namespaces cannot be created).
JEPSEN_TIME ?= 600
JEPSEN_BUG_TIME ?= 60
JEPSEN_BUGS = stale-read ack-before-commit
JEPSEN_RUN = /usr/bin/python3 $(srcdir)/tests/jepsen/run

TESTS += tests/jepsen/test_checker.py tests/jepsen/smoke.sh
EXTRA_DIST += tests/jepsen/test_checker.py tests/jepsen/smoke.sh \
	tests/jepsen/run tests/jepsen/checker.py tests/jepsen/README.md

.PHONY: jepsen jepsen-bugs
jepsen: ikada$(EXEEXT)
	rm -rf jepsen-results/ikada jepsen-results/etcd
	rc=0; \
	$(JEPSEN_RUN) --time $(JEPSEN_TIME) --server ikada \
		--binary $(abs_top_builddir)/ikada$(EXEEXT) \
		--out jepsen-results/ikada || rc=1; \
	$(JEPSEN_RUN) --time $(JEPSEN_TIME) --server etcd \
		--out jepsen-results/etcd || rc=1; \
	exit $$rc

jepsen-bugs: ikada$(EXEEXT)
	rc=0; for bug in $(JEPSEN_BUGS); do \
		rm -rf jepsen-results/bug-$$bug; \
		$(JEPSEN_RUN) --time $(JEPSEN_BUG_TIME) --server ikada \
			--binary $(abs_top_builddir)/ikada$(EXEEXT) --bug $$bug \
			--out jepsen-results/bug-$$bug; \
		st=$$?; \
		if test $$st = 1; then echo "jepsen-bugs: $$bug caught"; \
		else echo "jepsen-bugs: $$bug NOT caught (exit $$st)"; rc=1; fi; \
	done; exit $$rc
