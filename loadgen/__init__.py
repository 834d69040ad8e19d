"""The light load generator, installed with raysfu for `raysfu load-test` (gateway/loadtest.py) and used
by the benchmarks (bench/): LiveKit participants without codecs (livekit_peer) whose WebRTC peer
(rtp_peer, aiortc with the SFU's hooks) sends pre-built RTP carrying a send-time trailer (rtp) and counts
what arrives, for loss and latency (stats)."""
