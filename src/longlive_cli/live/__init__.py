"""``longlive live``: generate without end, steered from a loopback web page or standard input, optionally recorded.

The generator runs in its own thread (``session``) and applies prompt changes at chunk boundaries; a playout clock
(``playout``) hands frames to a latest-frame slot (``frames``) that each viewer of the page (``server``) reads at
its own pace; ``stdin`` turns lines into commands; ``record`` writes the MP4 and the timeline that replays it.
"""
