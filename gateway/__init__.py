"""runcast's network side: upstream client, simulator, fan-out hub, HTTP gateway and tool automation."""
