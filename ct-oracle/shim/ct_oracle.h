/* The oracle's interface: see ct_oracle.c. Mirrored by ct-oracle/src/ffi.rs. */
#ifndef CT_ORACLE_H
#define CT_ORACLE_H

#include <stddef.h>
#include <stdint.h>

enum {
	CTO_T_PRESENT = 1 << 0,
	CTO_T_SRC4 = 1 << 1,
	CTO_T_DST4 = 1 << 2,
	CTO_T_SRC6 = 1 << 3,
	CTO_T_DST6 = 1 << 4,
	CTO_T_L4PROTO = 1 << 5,
	CTO_T_SPORT = 1 << 6,
	CTO_T_DPORT = 1 << 7,
	CTO_T_ICMP_ID = 1 << 8,
	CTO_T_ICMP_TYPE = 1 << 9,
	CTO_T_ICMP_CODE = 1 << 10,
};

/* One tuple; ports and ids in host order, addresses as on the wire. */
struct cto_tuple {
	uint32_t set;
	uint8_t src4[4], dst4[4];
	uint8_t src6[16], dst6[16];
	uint16_t sport, dport, icmp_id;
	uint8_t l4proto, icmp_type, icmp_code;
	uint8_t pad[3];
};

enum {
	CTO_STATUS = 1 << 0,
	CTO_MARK = 1 << 1,
	CTO_ID = 1 << 2,
	CTO_TIMEOUT = 1 << 3,
	CTO_USE = 1 << 4,
	CTO_SECMARK = 1 << 5,
	CTO_ZONE = 1 << 6,
	CTO_TCP_STATE = 1 << 7,
	CTO_TCP_WSCALE_ORIG = 1 << 8,
	CTO_TCP_WSCALE_REPL = 1 << 9,
	CTO_TCP_FLAGS_ORIG = 1 << 10,
	CTO_TCP_FLAGS_REPL = 1 << 11,
	CTO_PACKETS_ORIG = 1 << 12,
	CTO_BYTES_ORIG = 1 << 13,
	CTO_PACKETS_REPL = 1 << 14,
	CTO_BYTES_REPL = 1 << 15,
	CTO_TS_START = 1 << 16,
	CTO_TS_STOP = 1 << 17,
	CTO_HELPER = 1 << 18,
	CTO_SECCTX = 1 << 19,
	CTO_LABELS = 1 << 20,
};

/* Everything read back from one nfct_payload_parse; values in host order. */
struct cto_result {
	uint64_t set;
	uint64_t packets_orig, bytes_orig, packets_repl, bytes_repl, ts_start, ts_stop;
	uint32_t status, mark, id, timeout, use, secmark;
	uint32_t labels_maxbit, labels_count;
	uint16_t zone;
	uint8_t tcp_state, tcp_wscale_orig, tcp_wscale_repl;
	uint8_t tcp_flags_orig, tcp_mask_orig, tcp_flags_repl, tcp_mask_repl;
	uint8_t helper_truncated, secctx_truncated;
	uint8_t pad[5];
	uint8_t labels[256];	/* label n: bit n % 8 of byte n / 8, for n < 2048 */
	char helper[64];
	char secctx[256];
	struct cto_tuple orig, reply, master;
};

enum {
	CTO_ACCEPTED = 0,	/* parsed; *out holds the results */
	CTO_REJECTED = 1,	/* the library refused the input (exit(1) or -1) */
	CTO_CRASHED = 2,	/* the child died of a signal */
	CTO_ERROR = -1,		/* pipe/fork/wait failed, or the child ended otherwise */
};

int cto_parse(const uint8_t *data, size_t len, uint16_t l3num, struct cto_result *out);
size_t cto_result_size(void);

#endif
