"""nfqbench peer consumer: Python's NetfilterQueue (PyPI), accepting every packet as its README
shows (bind a callback that calls pkt.accept(), then run()).

Usage: python3 consumer.py QUEUE COPY_RANGE MAX_LEN RCVBUF SPIN_NS (0: the library's default),
the arguments of every nfqbench consumer (see ../c/common.h). Prints the nfqbench-ready line once
the queue is bound, then accepts packets until killed."""
import resource
import socket
import sys
import time

from netfilterqueue import NetfilterQueue, COPY_PACKET


def main():
    queue, copy_range, max_len, rcvbuf, spin_ns = (int(a) for a in sys.argv[1:6])

    if spin_ns:
        def accept(pkt):
            end = time.perf_counter_ns() + spin_ns
            while time.perf_counter_ns() < end:
                pass
            pkt.accept()
    else:
        def accept(pkt):
            pkt.accept()

    nfqueue = NetfilterQueue()
    options = {"mode": COPY_PACKET}
    if copy_range:
        options["range"] = copy_range
    if max_len:
        options["max_len"] = max_len
    if rcvbuf:
        options["sock_len"] = rcvbuf
    nfqueue.bind(queue, accept, **options)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    cpu_ns = int((ru.ru_utime + ru.ru_stime) * 1e9)
    sock = socket.fromfd(nfqueue.get_fd(), socket.AF_NETLINK, socket.SOCK_RAW)
    granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    sock.close()
    print(f"nfqbench-ready cpu_ns={cpu_ns} rcvbuf={granted}", flush=True)
    nfqueue.run()


if __name__ == "__main__":
    main()
