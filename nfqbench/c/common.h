/* Shared by the nfqbench C consumers: argument parsing, the "ready" handshake, errors.
 *
 * Usage of every consumer:  <program> QUEUE COPY_RANGE MAX_LEN RCVBUF SPIN_NS
 *   MAX_LEN 0: keep the kernel's default queue length (1024)
 *   RCVBUF  0: keep the socket's default receive buffer
 *   SPIN_NS   busy-wait this long in each packet's callback (0: none), the work of a real
 *             consumer (the harness' latency shapes use 0, 5 and 50 us)
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
#include <time.h>

struct bench_args {
	unsigned queue;
	unsigned copy_range;
	unsigned max_len;
	unsigned rcvbuf;
	long long spin_ns;
};

static inline void bench_die(const char *what)
{
	fprintf(stderr, "nfqbench consumer: %s: %s\n", what, strerror(errno));
	exit(1);
}

static inline struct bench_args bench_parse_args(int argc, char **argv)
{
	struct bench_args a;

	if (argc != 6) {
		fprintf(stderr, "usage: %s QUEUE COPY_RANGE MAX_LEN RCVBUF SPIN_NS\n", argv[0]);
		exit(2);
	}
	a.queue = (unsigned)strtoul(argv[1], NULL, 10);
	a.copy_range = (unsigned)strtoul(argv[2], NULL, 10);
	a.max_len = (unsigned)strtoul(argv[3], NULL, 10);
	a.rcvbuf = (unsigned)strtoul(argv[4], NULL, 10);
	a.spin_ns = strtoll(argv[5], NULL, 10);
	return a;
}

static inline long long bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* The callback's work: busy-waits `ns` nanoseconds on the monotonic clock (as the libnfq
 * consumers do). */
static inline void bench_spin(long long ns)
{
	long long end;

	if (ns <= 0)
		return;
	end = bench_now_ns() + ns;
	while (bench_now_ns() < end)
		;
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
