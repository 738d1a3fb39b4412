from channels.generic.websocket import AsyncWebsocketConsumer

import common


class EchoConsumer(AsyncWebsocketConsumer):
    async def receive(self, text_data=None, bytes_data=None):
        if text_data is not None:
            await self.send(text_data=text_data)
        else:
            await self.send(bytes_data=bytes_data)


class SubprotocolConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        chosen = common.pick_subprotocol(self.scope.get("subprotocols", []))
        await self.accept(subprotocol=chosen)
        await self.send(text_data=chosen or "none")
        await self.close()


class CloseConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        await self.accept()
        await self.send(text_data="bye")
        await self.close(code=common.CLOSE_CODE, reason=common.CLOSE_REASON)
