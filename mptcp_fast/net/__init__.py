"""The real network: the engine on a TUN device and the kernel's own MPTCP.

``tun`` (a Linux TUN device), ``tunhost`` (an engine served over one), ``aio`` (asyncio streams
over the userspace engine), ``kernel`` (kernel MPTCP sockets and their subflow counters),
``kernel_pm`` (the kernel's path manager over netlink), ``netns`` (network namespaces and
veth pairs) and ``workers`` (an asyncio server's handler in N processes behind one address).
"""
