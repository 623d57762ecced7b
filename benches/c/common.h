/* Shared by the nfqbench C consumers: argument parsing, the "ready" handshake, errors.
 *
 * Usage of every consumer:  <program> QUEUE COPY_RANGE MAX_LEN RCVBUF
 *   MAX_LEN 0: keep the kernel's default queue length (1024)
 *   RCVBUF  0: keep the socket's default receive buffer
 *
 * Once the queue is bound and configured, the consumer prints one line on stdout,
 *   nfqbench-ready cpu_ns=<user+sys CPU so far> rcvbuf=<SO_RCVBUF granted>
 * and then accepts packets until it is killed. */
#ifndef NFQBENCH_COMMON_H
#define NFQBENCH_COMMON_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>

struct bench_args {
	unsigned queue;
	unsigned copy_range;
	unsigned max_len;
	unsigned rcvbuf;
};

static inline void bench_die(const char *what)
{
	fprintf(stderr, "nfqbench consumer: %s: %s\n", what, strerror(errno));
	exit(1);
}

static inline struct bench_args bench_parse_args(int argc, char **argv)
{
	struct bench_args a;

	if (argc != 5) {
		fprintf(stderr, "usage: %s QUEUE COPY_RANGE MAX_LEN RCVBUF\n", argv[0]);
		exit(2);
	}
	a.queue = (unsigned)strtoul(argv[1], NULL, 10);
	a.copy_range = (unsigned)strtoul(argv[2], NULL, 10);
	a.max_len = (unsigned)strtoul(argv[3], NULL, 10);
	a.rcvbuf = (unsigned)strtoul(argv[4], NULL, 10);
	return a;
}

/* Sets the receive buffer the way a privileged program does (SO_RCVBUFFORCE, falling back to
 * SO_RCVBUF, which net.core.rmem_max caps). */
static inline void bench_set_rcvbuf(int fd, unsigned bytes)
{
	int value = (int)bytes;

	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &value, sizeof(value)) < 0 &&
	    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &value, sizeof(value)) < 0)
		bench_die("setsockopt(SO_RCVBUF)");
}

/* Tells the harness that the queue is bound: CPU time used so far (subtracted from the total
 * the harness gets from wait4) and the receive buffer the kernel granted. */
static inline void bench_ready(int fd)
{
	struct rusage ru;
	int rcvbuf = 0;
	socklen_t len = sizeof(rcvbuf);
	long long ns;

	if (getrusage(RUSAGE_SELF, &ru) < 0)
		bench_die("getrusage");
	if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, &len) < 0)
		bench_die("getsockopt(SO_RCVBUF)");
	ns = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL +
	     (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL;
	printf("nfqbench-ready cpu_ns=%lld rcvbuf=%d\n", ns, rcvbuf);
	fflush(stdout);
}

#endif
