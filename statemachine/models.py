"""Model names the library's demo, examples and benchmarks use (no imports: the command line
reads them before it loads google-genai)."""

#: today's recommended Live model for voice agents (the demo's and the README's default)
DEFAULT_MODEL = "gemini-3.8-live"
#: the model the benchmarks' baselines were measured with (text replies, handles at turn
#: boundaries), so their numbers stay comparable from run to run
BENCH_MODEL = "gemini-live-2.5-flash-preview"
