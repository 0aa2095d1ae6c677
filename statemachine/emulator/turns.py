"""What the emulated model does with a connection's input: turns, streamed replies, tool calls
(blocking or not, with response scheduling), interruptions, voice activity, transcriptions and
usage. The generation's profile (profiles.py) decides handles mid-turn and `interactionStatus`."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
from typing import TYPE_CHECKING, Any

from .model import OpenCall, Turn, reply_audio, split
from .vad import Activity, EnergyDetector, pcm_rate
from .wire import CLOSE_ACTIVITY, CLOSE_INVALID

if TYPE_CHECKING:
    from .server import Connection, EmulatedSession

#: "call NAME" or "call NAME {json args}"
_TOOL_RE = re.compile(r"\bcall (\w+)(?: (\{[^{}]*\}))?")
#: "firehose N": N one-character chunks with no pause (for throughput measurements)
_FIREHOSE_RE = re.compile(r"^firehose (\d+)$")
_SENSITIVITY = {"START_SENSITIVITY_LOW": 2.0, "START_SENSITIVITY_HIGH": 0.5}


class TurnEngine:
    """The model side of one connection."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.audio_out = False
        self.tools: set[str] = set()
        self.non_blocking: set[str] = set()
        #: automatic activity detection (the service's default); None when the setup disables it
        self.detector: EnergyDetector | None = None
        self.barge_in = True
        self.input_transcription = False
        self.output_transcription = False
        self.proactive_audio = False
        self._generation: asyncio.Task[None] | None = None
        #: the generation is past `turnComplete`, thinking in the background (3.x)
        self._thinking = False
        #: call ids the current generation waits for, and the responses that came for them
        self._awaiting: set[str] = set()
        self._results: dict[str, dict[str, Any]] = {}
        self._answered = asyncio.Event()
        #: calls a resumed 3.x session must see answered before it replies again
        self._leftover: set[str] = set()
        #: non-blocking results waiting for the model to be idle (WHEN_IDLE)
        self._when_idle: list[tuple[str, dict[str, Any]]] = []
        self._call_ids = 0
        self._turn_handles = 0
        self._replies = 0  # replies that began streaming on this connection
        #: VAD ended the last turn and has heard no speech since: trailing silence is no turn
        self._silence_after_turn = False
        #: 3.8: `clientContent` without `turnComplete` came; nothing is answered until one does
        self._content_open = False
        #: the blocking calls the current generation waits for
        self._blocking: set[str] = set()

    @property
    def session(self) -> EmulatedSession:
        assert self.conn.session is not None
        return self.conn.session

    # -- setup ------------------------------------------------------------------------------------

    def configure(self, session: EmulatedSession, setup: dict[str, Any]) -> None:
        settings = self.conn.emu.settings
        profile = self.conn.profile
        generation = setup.get("generation_config") or {}
        modalities = generation.get("response_modalities") or setup.get("response_modalities")
        self.audio_out = [str(m).upper() for m in (modalities or ["AUDIO"])] == ["AUDIO"]
        if self.conn.resumed and session.context.tools is not None:
            self._use_tools(session.context.tools)  # the handle's: a resume keeps them
        else:
            self._set_tools(setup.get("tools") or [])
        system = setup.get("system_instruction")
        if system and not self.conn.resumed:
            session.context.system = _text_of(system)
        cwc = setup.get("context_window_compression")
        if cwc is not None:
            trigger = int(cwc.get("trigger_tokens") or settings.context_window * 0.8)
            window = cwc.get("sliding_window") or {}
            target = int(window.get("target_tokens") or trigger // 2)
            session.compression = (trigger, target)
        elif not self.conn.resumed:
            session.compression = None
        realtime = setup.get("realtime_input_config") or {}
        aad = realtime.get("automatic_activity_detection") or {}
        if not aad.get("disabled"):
            factor = _SENSITIVITY.get(str(aad.get("start_of_speech_sensitivity")), 1.0)
            self.detector = EnergyDetector(
                threshold=settings.vad_threshold * factor,
                silence_ms=int(aad.get("silence_duration_ms") or settings.vad_silence_ms),
                prefix_ms=int(aad.get("prefix_padding_ms") or settings.vad_prefix_ms),
            )
        self.barge_in = realtime.get("activity_handling") != "NO_INTERRUPTION"
        self.input_transcription = setup.get("input_audio_transcription") is not None
        self.output_transcription = setup.get("output_audio_transcription") is not None
        proactivity = setup.get("proactivity") or {}
        self.proactive_audio = profile.proactive_audio or bool(proactivity.get("proactive_audio"))
        if self.conn.resumed:
            if profile.resume_waits_for_open_calls:
                self._leftover = set(session.context.open_calls)
            else:
                for call_id, call in list(session.context.open_calls.items()):
                    if call.blocking:
                        del session.context.open_calls[call_id]

    def _set_tools(self, tools: list[dict[str, Any]]) -> None:
        default = "NON_BLOCKING" if self.conn.profile.tools_non_blocking else "BLOCKING"
        declared: dict[str, bool] = {}
        for tool in tools:
            for decl in tool.get("function_declarations") or []:
                declared[decl.get("name", "")] = (decl.get("behavior") or default) \
                    == "NON_BLOCKING"
        self.session.context.tools = declared
        self._use_tools(declared)

    def _use_tools(self, declared: dict[str, bool]) -> None:
        self.tools = set(declared)
        self.non_blocking = {name for name, non_blocking in declared.items() if non_blocking}

    # -- client messages --------------------------------------------------------------------------

    async def consume(self, msg: dict[str, Any]) -> bool:
        """Take one client message; False when the service would reject it (1007)."""
        ctx = self.session.context
        if self._blocking and self.conn.vertex and self.conn.profile.input_cancels_blocking_calls \
                and ("client_content" in msg or "realtime_input" in msg) and self.generating():
            await self._interrupt()  # 3.8 on Vertex: new input cancels a running BLOCKING call
        if "client_content" in msg:
            content = msg["client_content"] or {}
            if self.conn.profile.incomplete_content_waits:
                # 3.8: without turnComplete the model waits for more; with it, it answers
                self._content_open = not content.get("turn_complete")
            texts: list[str] = []
            for turn in content.get("turns") or []:
                role = turn.get("role", "user")
                text = "".join(p.get("text", "") for p in turn.get("parts") or [])
                if content.get("turn_complete") and role == "user":
                    texts.append(text)
                else:
                    ctx.add(Turn(role=role, text=text))
            if content.get("turn_complete") and not content.get("turns"):
                await self.continue_turn()
            elif content.get("turn_complete"):
                if self.conn.emu.settings.track_inputs:
                    ctx.consumed.extend("t:" + t for t in texts)
                await self.start_turn(" ".join(texts))
        elif "realtime_input" in msg:
            return await self._realtime(msg["realtime_input"] or {})
        elif "tool_response" in msg:
            await self._tool_response((msg["tool_response"] or {}).get("function_responses") or [])
        elif "context_update" in msg:
            update = msg["context_update"] or {}
            if update.get("system_instruction") is not None:
                ctx.system = _text_of(update["system_instruction"])
            tools = update.get("tools")
            if tools is not None:
                self._set_tools(tools.get("tools") or [] if isinstance(tools, dict) else tools)
            ctx.updates += 1
        else:
            return False
        return True

    async def _realtime(self, rt: dict[str, Any]) -> bool:
        session = self.session
        ctx = session.context
        for kind, blob in _blobs(rt):
            data = _b64(blob.get("data", ""))
            if kind == "video":
                ctx.pending_video += 1
                session.video_sent = True
                continue
            ctx.pending_audio += len(data)
            if self.conn.emu.settings.track_inputs:
                ctx.consumed.append("a:" + data[:8].hex())
            if self.detector is not None:
                rate = pcm_rate(str(blob.get("mime_type", "")))
                for activity in self.detector.feed(data, rate):
                    if activity is Activity.START:
                        self._silence_after_turn = False
                        await self._activity_start()
                    else:
                        self._silence_after_turn = True
                        await self.start_turn(None)
        explicit = rt.get("activity_start") is not None or rt.get("activity_end") is not None
        if explicit and self.detector is not None:
            await self.conn.close(CLOSE_INVALID, CLOSE_ACTIVITY)
            return True
        if rt.get("activity_start") is not None:
            await self._activity_start()
        if rt.get("text"):
            if self.conn.emu.settings.track_inputs:
                ctx.consumed.append("t:" + str(rt["text"]))
            await self.start_turn(str(rt["text"]))
        if rt.get("audio_stream_end") or rt.get("activity_end") is not None:
            if self.detector is not None:
                self.detector.speaking = False
            if self._silence_after_turn:
                ctx.pending_audio = ctx.pending_video = 0
            elif ctx.pending_audio or ctx.pending_video:
                await self.start_turn(None)
        return True

    async def _activity_start(self) -> None:
        """The user started talking: barge in on a reply in progress."""
        if self.barge_in and self.generating():
            await self._interrupt()

    # -- turns ------------------------------------------------------------------------------------

    def generating(self) -> bool:
        task = self._generation
        return task is not None and not task.done() and not self._thinking

    async def _interrupt(self) -> None:
        """Barge-in: cancel the calls the reply waits for, stop it, say so, end the turn."""
        assert self._generation is not None
        cancelled = sorted(self._awaiting)
        self._generation.cancel()
        await asyncio.gather(self._generation, return_exceptions=True)
        if cancelled:
            for call_id in cancelled:
                self.session.context.open_calls.pop(call_id, None)
                self._leftover.discard(call_id)
            await self.conn.send({"toolCallCancellation": {"ids": cancelled}})
        await self.conn.send({"serverContent": {"interrupted": True}})
        await self.conn.send({"serverContent": {"turnComplete": True}})

    async def _stop_current(self) -> None:
        task = self._generation
        if task is None or task.done():
            return
        if self._thinking:  # background thinking ends quietly when new input comes
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        else:
            await self._interrupt()

    async def start_turn(self, text: str | None) -> None:
        """A user turn ends: `text`, or (None) the realtime audio and video since the last."""
        await self._stop_current()
        ctx = self.session.context
        n_bytes, frames = ctx.pending_audio, ctx.pending_video
        if text is None:
            ctx.add(Turn(role="user", audio_bytes=n_bytes, video_frames=frames))
            reply = ctx.reply_to_audio(n_bytes) if n_bytes or frames else ""
        else:
            ctx.add(Turn(role="user", text=text, audio_bytes=n_bytes))
            reply = ctx.reply_to(text) if text else ""
        ctx.pending_audio = ctx.pending_video = 0
        if text is None and n_bytes and self.input_transcription:
            heard = f"(speech, {n_bytes * 1000 // 32_000} ms)"
            await self.conn.send({"serverContent": {
                "inputTranscription": {"text": heard, "finished": True}}})
        if self._content_open:
            return  # 3.8: the turn is taken in; the reply waits for a turnComplete
        self._launch(text, reply)

    async def continue_turn(self) -> None:
        """`turnComplete` with no turns: generate from the accumulated prompt. A user turn whose
        reply was cut (a resumed mid-turn handle holds it) is answered again, in full; the calls
        it already made are not made again. With nothing owed the model waits for input."""
        await self._stop_current()
        ctx = self.session.context
        owed = ctx.owed_turn()
        if owed is None:
            self._launch(None, "")
            return
        reply = ctx.reply_to(owed.text) if owed.text else ctx.reply_to_audio(owed.audio_bytes)
        self._launch(owed.text or None, reply, calls=False)

    def _launch(self, text: str | None, reply: str, *, results: str = "",
                calls: bool = True) -> None:
        task = asyncio.get_running_loop().create_task(
            self._generate(text, reply, results, calls=calls))
        self._generation = task
        self._thinking = False
        self.conn.track(task)

    async def _generate(self, text: str | None, reply: str, results: str,
                        calls: bool = True) -> None:
        conn, ctx = self.conn, self.session.context
        settings = conn.emu.settings
        if self.session.compression is not None:
            ctx.compress(*self.session.compression)
        prompt = ctx.tokens_by_modality()
        if conn.resumption and not conn.profile.mid_turn_handles:
            await conn.send({"sessionResumptionUpdate": {"newHandle": "", "resumable": False}})
        if self._leftover:  # 3.x after a resume: blocked until the old calls are answered
            leftover, self._leftover = set(self._leftover), set()
            results += await self._wait_for(leftover)
        firehose = _FIREHOSE_RE.match(text or "")
        if firehose:
            await self._firehose(int(firehose.group(1)))
            return
        if not reply and not results:
            await self._complete(prompt, "", reason="NEED_MORE_INPUT")
            return
        if settings.response_delay:
            await asyncio.sleep(settings.seconds("response_delay"))
        call = _TOOL_RE.search(text or "") if calls else None
        if call and call.group(1) in self.tools:
            name, args = call.group(1), _args(call.group(2))
            if name in self.non_blocking:
                await self._issue_call(name, blocking=False, args=args)
                reply = f"I started {name}. {reply}"
            else:
                repeats = conn.profile.empty_result_repeats
                while True:
                    call_id = await self._issue_call(name, blocking=True, args=args)
                    self._blocking.add(call_id)
                    try:
                        response = await self._wait_for_one(call_id)
                    finally:
                        self._blocking.discard(call_id)
                    if repeats and _empty(response):  # 3.8: it returned nothing: call again
                        repeats -= 1
                        continue
                    results += _result_text(name, response) + " "
                    break
        reply = results + reply
        sent, whole = "", False
        try:
            for chunk in split(reply, settings.chunks_per_reply):
                await self._stream(chunk)
                if not sent:
                    self._replies += 1
                    if conn.plan.go_away_in_reply == self._replies:
                        await conn.expire(settings.seconds("go_away_lead"))
                sent += chunk
                await asyncio.sleep(settings.seconds("chunk_interval"))
                if conn.resumption and conn.profile.mid_turn_handles:
                    await conn.issue_handle(partial_reply=sent)
            whole = True
        finally:
            ctx.add(Turn(role="model", text=sent, cut=not whole))
        await conn.send({"serverContent": {"generationComplete": True}})
        await asyncio.sleep(settings.seconds("playback_delay"))
        await self._complete(prompt, reply)

    async def _stream(self, chunk: str) -> None:
        part: dict[str, Any]
        if self.audio_out:
            data = base64.b64encode(reply_audio(chunk)).decode()
            part = {"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": data}}
        else:
            part = {"text": chunk}
        await self.conn.send({"serverContent": {"modelTurn": {"parts": [part]}}})
        if self.audio_out and self.output_transcription:
            await self.conn.send({"serverContent": {"outputTranscription": {"text": chunk}}})

    async def _firehose(self, n: int) -> None:
        for _ in range(n):
            await self.conn.send({"serverContent": {"modelTurn": {"parts": [{"text": "x"}]}}})
        self.session.context.add(Turn(role="model", text="firehose"))
        await self.conn.send({"serverContent": {"turnComplete": True}})

    async def _complete(
        self, prompt: dict[str, int], reply: str, reason: str | None = None
    ) -> None:
        """`turnComplete` with usage, then (3.x) background thinking, then the handle."""
        conn = self.conn
        thinking = conn.emu.settings.seconds("extended_thinking")
        content: dict[str, Any] = {"turnComplete": True}
        if reason is not None:
            content.update(turnCompleteReason=reason, waitingForInput=True)
        if conn.profile.interaction_status:
            content["interactionStatus"] = "IN_PROGRESS" if thinking else "IDLE"
        await conn.send({"serverContent": content, "usageMetadata": _usage(prompt, reply,
                                                                           self.audio_out)})
        if thinking and conn.profile.interaction_status:
            self._thinking = True
            if conn.resumption:
                await conn.issue_handle()
            await asyncio.sleep(thinking)
            await conn.send({"serverContent": {"interactionStatus": "IDLE"}})
        self._turn_handles += 1
        if conn.plan.drop_at_turn_handle == self._turn_handles:
            conn.drop()
            return
        if conn.resumption:
            await conn.issue_handle()
        self._thinking = False
        if self._when_idle:
            queued, self._when_idle = self._when_idle, []
            self._launch(None, "", results=" ".join(_result_text(n, r) for n, r in queued))

    # -- tools ------------------------------------------------------------------------------------

    async def _issue_call(self, name: str, *, blocking: bool, args: dict[str, Any] | None = None,
                          repeats: int | None = None) -> str:
        conn = self.conn
        self._call_ids += 1
        call_id = f"call-{conn.number}-{self._call_ids}"
        args = args or {}
        if repeats is None:
            repeats = conn.profile.empty_result_repeats
        self.session.context.open_calls[call_id] = OpenCall(
            name=name, blocking=blocking, args=args, repeats=repeats)
        await conn.send({"toolCall": {"functionCalls": [{"id": call_id, "name": name,
                                                          "args": args}]}})
        if conn.resumption:
            if conn.profile.mid_turn_handles:
                await conn.issue_handle()
            elif blocking:
                await conn.send({"sessionResumptionUpdate": {"newHandle": "",
                                                             "resumable": False}})
        return call_id

    async def _wait_for_one(self, call_id: str) -> dict[str, Any]:
        """Wait until the call is answered; its response."""
        self._awaiting.add(call_id)
        try:
            while call_id not in self._results:
                self._answered.clear()
                await self._answered.wait()
        finally:
            self._awaiting.discard(call_id)
        return self._results.pop(call_id)

    async def _wait_for(self, ids: set[str]) -> str:
        """Wait until every call in `ids` is answered; the results, as the reply quotes them."""
        self._awaiting |= ids
        try:
            while not ids <= self._results.keys():
                self._answered.clear()
                await self._answered.wait()
        finally:
            self._awaiting -= ids
        open_calls = self.session.context.open_calls
        names = {i: self._results[i].get("name") or open_calls.get(i, OpenCall(
            name="tool", blocking=True)).name for i in ids}
        texts = [_result_text(str(names[i]), self._results.pop(i)) for i in sorted(ids)]
        return " ".join(texts) + " "

    async def _tool_response(self, responses: list[dict[str, Any]]) -> None:
        ctx = self.session.context
        for response in responses:
            call_id = response.get("id") or next(
                (i for i in sorted(self._awaiting) if i not in self._results), None)
            call = ctx.open_calls.pop(call_id, None) if call_id else None
            ctx.add(Turn(role="user", tool={"responses": [response]}))
            if call_id is None or call is None:
                continue  # an unknown id: the model takes it in, nothing waits for it
            if call_id in self._awaiting or call_id in self._leftover:
                # a reply waits for it (the next one, for a call the old connection left open)
                self._results[call_id] = response
                self._answered.set()
                continue
            if call.repeats and _empty(response):  # 3.8: it returned nothing: call again
                await self._issue_call(call.name, blocking=False, args=call.args,
                                       repeats=call.repeats - 1)
                continue
            await self._schedule(call.name, response)

    async def _schedule(self, name: str, response: dict[str, Any]) -> None:
        """A non-blocking call's result, by its `scheduling`: INTERRUPT speaks at once (cutting
        the reply in progress), WHEN_IDLE after the current reply, SILENT never."""
        scheduling = str(response.get("scheduling") or "WHEN_IDLE")
        if scheduling == "SILENT":
            return
        if scheduling == "INTERRUPT":
            await self._stop_current()
        elif self._generation is not None and not self._generation.done():
            self._when_idle.append((name, response))
            return
        self._launch(None, "", results=_result_text(name, response))


def _args(text: str | None) -> dict[str, Any]:
    """The arguments of "call NAME {json}" (none: {})."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _empty(response: dict[str, Any]) -> bool:
    """A tool that returned nothing: no `response`, or an empty one."""
    return not response.get("response")


def _result_text(name: str, response: dict[str, Any]) -> str:
    return f"{name} returned {json.dumps(response.get('response'), sort_keys=True)}."


def _usage(prompt: dict[str, int], reply: str, audio_out: bool) -> dict[str, Any]:
    prompt_total = sum(prompt.values())
    response = max(1, len(reply) // 4) if reply else 0
    details = [{"modality": m, "tokenCount": n} for m, n in prompt.items() if n]
    usage: dict[str, Any] = {
        "promptTokenCount": prompt_total,
        "responseTokenCount": response,
        "totalTokenCount": prompt_total + response,
        "promptTokensDetails": details,
    }
    if response:
        modality = "AUDIO" if audio_out else "TEXT"
        usage["responseTokensDetails"] = [{"modality": modality, "tokenCount": response}]
    return usage


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return " ".join(p.get("text", "") for p in (content.get("parts") or []))
    return ""


def _blobs(rt: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every media blob of a realtime input, as ("audio" | "video", blob): the mime type decides
    (image/* and video/* are video whatever field carries them), else the field."""
    out: list[tuple[str, dict[str, Any]]] = []
    for field in ("audio", "video", "media", "media_chunks"):
        value = rt.get(field)
        blobs = value if isinstance(value, list) else [value] if isinstance(value, dict) else []
        for blob in blobs:
            mime = str(blob.get("mime_type", ""))
            if mime.startswith(("image/", "video/")):
                kind = "video"
            elif mime.startswith("audio/"):
                kind = "audio"
            else:
                kind = "video" if field == "video" else "audio"
            out.append((kind, blob))
    return out


def _b64(data: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    except (binascii.Error, ValueError):
        return base64.b64decode(data + "=" * (-len(data) % 4))

