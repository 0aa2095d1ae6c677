// Google's session-management sample for the Live API, in its spirit: connect with
// @google/genai, ask for session resumption, keep the latest handle, then resume a new
// connection with it and send a turn; the reply must remember the first connection's turn.
// The emulator's address comes from the environment (EMU_BASE_URL, EMU_API_KEY, EMU_MODEL);
// Node trusts the emulator's CA through NODE_EXTRA_CA_CERTS.
import { GoogleGenAI, Modality } from '@google/genai';

const ai = new GoogleGenAI({
  apiKey: process.env.EMU_API_KEY,
  httpOptions: { baseUrl: process.env.EMU_BASE_URL },
});
const model = process.env.EMU_MODEL || 'gemini-live-2.5-flash-preview';

function fail(why) {
  console.error(why);
  process.exit(1);
}

// A connection whose messages can be awaited one condition at a time.
async function open(handle) {
  const messages = [];
  let wake = () => {};
  const session = await ai.live.connect({
    model,
    config: {
      responseModalities: [Modality.TEXT],
      sessionResumption: handle ? { handle } : {},
    },
    callbacks: {
      onmessage: (m) => { messages.push(m); wake(); },
      onerror: (e) => fail(`socket error: ${e.message}`),
      onclose: () => { wake(); },
    },
  });
  let seen = 0;
  const next = async (until) => {
    const deadline = Date.now() + 20000;
    for (;;) {
      while (seen < messages.length) {
        const m = messages[seen++];
        if (until(m)) return m;
      }
      if (Date.now() > deadline) fail('timed out waiting for the emulator');
      await new Promise((resolve) => { wake = resolve; setTimeout(resolve, 1000); });
    }
  };
  return { session, messages, next };
}

const handleOf = (m) => m.sessionResumptionUpdate?.resumable && m.sessionResumptionUpdate.newHandle;
const textSince = (messages, from) => messages.slice(from)
  .flatMap((m) => m.serverContent?.modelTurn?.parts ?? [])
  .map((p) => p.text ?? '').join('');

// First connection: one turn, then the handle issued after it.
const first = await open(null);
first.session.sendClientContent({ turns: 'my name is Ada', turnComplete: true });
await first.next((m) => m.serverContent?.turnComplete);
const handle = handleOf(await first.next(handleOf));
first.session.close();

// Second connection resumes the session with that handle.
const second = await open(handle);
await second.next(handleOf);
const from = second.messages.length;
second.session.sendClientContent({ turns: 'what is my name?', turnComplete: true });
await second.next((m) => m.serverContent?.turnComplete);
const reply = textSince(second.messages, from);
second.session.close();
console.log(JSON.stringify({ resumed: true, reply }));
if (!reply.includes('my name is Ada')) fail(`the resumed session forgot: ${reply}`);
