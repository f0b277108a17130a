"""Which publisher a topic belongs to, for the Subscriber: the standard tree says it in its
levels (Part 14 §7.3.4.7); a custom topic (a UNS queue name, docs/uns.md) is what the
publisher's ua-connection announced. A topic two publishers announce belongs to neither, and a
publisher cannot grow the map without bound."""

from __future__ import annotations

import logging

from opcua_mqtt.core.messages.metadata import ConnectionMessage
from opcua_mqtt.core.topics import TopicInfo, TopicTree
from opcua_mqtt.core.uns import announced_topics

_log = logging.getLogger("opcua_mqtt.subscriber")

#: At most this many custom topics announced in ua-connection messages are remembered (and,
#: with discovery, subscribed to): a publisher cannot grow the subscriber without bound.
MAX_DISCOVERED = 1_000


class TopicMap:
    def __init__(self, topics: TopicTree) -> None:
        self.topics = topics
        self._tree_root = f"{topics.prefix}/{topics.encoding}/"  # the standard tree's topics
        self.announced: dict[str, TopicInfo] = {}  # custom topic -> what its ua-connection says
        self._announcers: dict[str, set[str]] = {}  # custom topic -> PublisherIds announcing it

    def info(self, topic: str) -> TopicInfo | None:
        """What the topic says of its messages: its levels in the standard tree (DecodeError
        when it is under the tree's root but not a topic of it), what a ua-connection
        announced for a custom topic, or None for a custom topic nobody announced."""
        if topic.startswith(self._tree_root):
            return self.topics.parse(topic)
        return self.announced.get(topic)

    def learn(self, message: ConnectionMessage) -> list[str]:
        """Take in the custom topics ``message`` announces; those now owned by its publisher
        alone."""
        publisher = message.publisher_id
        owned = []
        for topic, info in announced_topics(message).items():
            if topic.startswith(self._tree_root):
                continue  # a standard topic: its levels say whose it is
            announcers = self._announcers.setdefault(topic, set())
            if len(self._announcers) > MAX_DISCOVERED and not announcers:
                del self._announcers[topic]
                continue
            announcers.add(publisher)
            if len(announcers) > 1:
                if self.announced.pop(topic, None) is not None:
                    _log.warning(
                        "topic %s is announced by several publishers (%s): its messages are "
                        "taken at their word",
                        topic,
                        ", ".join(sorted(announcers)),
                    )
                continue
            self.announced[topic] = info
            owned.append(topic)
        return owned
