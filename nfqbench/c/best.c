/* nfqbench baseline 2: the fastest single-threaded C consumer we know how to write.
 *
 * libmnl + the nfq_nlmsg_* API, with the known techniques:
 *   - the bind, copy mode and queue length sent in one configuration message;
 *   - NETLINK_NO_ENOBUFS, and a large receive buffer (RCVBUF argument);
 *   - batched verdicts: receive what is waiting (MSG_DONTWAIT after the first, blocking
 *     receive), up to MAX_BATCH packets, then accept them all with one range verdict
 *     (NFQNL_MSG_VERDICT_BATCH up to the last id received).
 * Each packet's callback busy-waits SPIN_NS first (the latency shapes' work per packet).
 * Every packet is accepted. See common.h for the command line. */
#include <arpa/inet.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <stdint.h>
#include <libmnl/libmnl.h>
#include <libnetfilter_queue/libnetfilter_queue.h>

#include "common.h"

/* Bounds the latency of the first packet of a batch when the queue is long (the harness also
 * builds a variant with -DMAX_BATCH=64, libnfq's default batch). */
#ifndef MAX_BATCH
#define MAX_BATCH 1024
#endif

struct batch {
	uint32_t last_id;
	unsigned pending;
	long long spin_ns;
};

static int on_packet(const struct nlmsghdr *nlh, void *data)
{
	struct nlattr *attr[NFQA_MAX + 1] = { 0 };
	struct nfqnl_msg_packet_hdr *ph;
	struct batch *b = data;

	if (nfq_nlmsg_parse(nlh, attr) < 0 || !attr[NFQA_PACKET_HDR])
		return MNL_CB_ERROR;
	ph = mnl_attr_get_payload(attr[NFQA_PACKET_HDR]);
	bench_spin(b->spin_ns);
	b->last_id = ntohl(ph->packet_id);
	b->pending++;
	return MNL_CB_OK;
}

static void send_or_die(struct mnl_socket *nl, const struct nlmsghdr *nlh)
{
	if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0)
		bench_die("mnl_socket_sendto");
}

static void configure(struct mnl_socket *nl, const struct bench_args *a, char *buf, size_t size)
{
	struct nlmsghdr *nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, a->queue);
	unsigned portid = mnl_socket_get_portid(nl);
	ssize_t n;

	nfq_nlmsg_cfg_put_cmd(nlh, AF_INET, NFQNL_CFG_CMD_BIND);
	nfq_nlmsg_cfg_put_params(nlh, NFQNL_COPY_PACKET, (int)a->copy_range);
	if (a->max_len)
		nfq_nlmsg_cfg_put_qmaxlen(nlh, a->max_len);
	nlh->nlmsg_flags |= NLM_F_ACK;
	nlh->nlmsg_seq = 1;
	send_or_die(nl, nlh);
	n = mnl_socket_recvfrom(nl, buf, size);
	if (n < 0)
		bench_die("receive the configuration acknowledgement");
	if (mnl_cb_run(buf, (size_t)n, 1, portid, NULL, NULL) < 0)
		bench_die("bind the queue");
}

int main(int argc, char **argv)
{
	struct bench_args args = bench_parse_args(argc, argv);
	static char buf[65536 + 4096] __attribute__((aligned(8)));
	static char out[256] __attribute__((aligned(8)));
	struct batch batch = { 0, 0, 0 };
	struct mnl_socket *nl;
	unsigned portid;
	int one = 1;
	int fd;

	nl = mnl_socket_open(NETLINK_NETFILTER);
	if (!nl)
		bench_die("mnl_socket_open");
	if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0)
		bench_die("mnl_socket_bind");
	portid = mnl_socket_get_portid(nl);
	fd = mnl_socket_get_fd(nl);
	if (mnl_socket_setsockopt(nl, NETLINK_NO_ENOBUFS, &one, sizeof(one)) < 0)
		bench_die("setsockopt(NETLINK_NO_ENOBUFS)");
	if (args.rcvbuf)
		bench_set_rcvbuf(fd, args.rcvbuf);
	batch.spin_ns = args.spin_ns;
	configure(nl, &args, buf, sizeof(buf));
	bench_ready(fd);

	for (;;) {
		/* Wait for the first packet; then take only what is already waiting. */
		ssize_t n = recv(fd, buf, sizeof(buf), batch.pending ? MSG_DONTWAIT : 0);

		if (n > 0) {
			/* Errors the kernel reports about earlier verdicts would make this fail;
			 * there are none to report for plain accepts of ids we received. */
			if (mnl_cb_run(buf, (size_t)n, 0, portid, on_packet, &batch) < 0 &&
			    errno != ENOENT)
				bench_die("mnl_cb_run");
			if (batch.pending < MAX_BATCH)
				continue;
		} else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
			bench_die("recv");
		}
		if (batch.pending) {
			struct nlmsghdr *nlh = nfq_nlmsg_put(out, NFQNL_MSG_VERDICT_BATCH, args.queue);

			nfq_nlmsg_verdict_put(nlh, (int)batch.last_id, NF_ACCEPT);
			send_or_die(nl, nlh);
			batch.pending = 0;
		}
	}
}
