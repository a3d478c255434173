"""The avatar: the bot's speech as ARKit face poses, a 2D face drawn from them, and their wire format."""
