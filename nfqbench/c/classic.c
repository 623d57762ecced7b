/* nfqbench baseline 1: the classic NFQUEUE consumer, as most C programs are written.
 *
 * Legacy libnetfilter_queue API (nfq_open / nfq_create_queue / nfq_set_mode), one recv(2) and
 * one nfq_handle_packet() per packet, and in the callback (after SPIN_NS of work) one nfq_set_verdict() -- one sendmsg
 * -- per packet. Every packet is accepted. See common.h for the command line. */
#include <arpa/inet.h>
#include <linux/netfilter.h>
#include <stdint.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <libnfnetlink/libnfnetlink.h>

#include "common.h"

static int on_packet(struct nfq_q_handle *qh, struct nfgenmsg *msg, struct nfq_data *nfa,
		     void *data)
{
	struct nfqnl_msg_packet_hdr *ph = nfq_get_msg_packet_hdr(nfa);
	uint32_t id = ph ? ntohl(ph->packet_id) : 0;
	const struct bench_args *a = data;

	(void)msg;
	bench_spin(a->spin_ns);
	return nfq_set_verdict(qh, id, NF_ACCEPT, 0, NULL);
}

int main(int argc, char **argv)
{
	struct bench_args args = bench_parse_args(argc, argv);
	/* Room for the largest packet message (a 65531-byte copy plus its attributes). */
	static char buf[65536 + 4096] __attribute__((aligned(8)));
	struct nfq_handle *h;
	struct nfq_q_handle *qh;
	int fd;

	h = nfq_open();
	if (!h)
		bench_die("nfq_open");
	qh = nfq_create_queue(h, (uint16_t)args.queue, &on_packet, &args);
	if (!qh)
		bench_die("nfq_create_queue");
	if (nfq_set_mode(qh, NFQNL_COPY_PACKET, args.copy_range) < 0)
		bench_die("nfq_set_mode");
	if (args.max_len && nfq_set_queue_maxlen(qh, args.max_len) < 0)
		bench_die("nfq_set_queue_maxlen");
	fd = nfq_fd(h);
	if (args.rcvbuf)
		nfnl_rcvbufsiz(nfq_nfnlh(h), args.rcvbuf);
	bench_ready(fd);

	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);

		if (n >= 0) {
			nfq_handle_packet(h, buf, (int)n);
			continue;
		}
		/* ENOBUFS: the kernel dropped messages (counted in its queue statistics); go on. */
		if (errno == ENOBUFS || errno == EINTR)
			continue;
		bench_die("recv");
	}
}
