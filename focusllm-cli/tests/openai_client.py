#!/usr/bin/env python3
"""Calls `focusllm serve` with the official `openai` Python client (the tests in serve.rs run it).

Prints the answer's text, or with --json one JSON line:
{"text", "finish_reason", "usage", "chunks"}; with --concurrent N, N streamed requests run at once
(asyncio) and --json prints a list of those objects.

    python3 openai_client.py --base-url http://127.0.0.1:8080/v1 --model NAME \
        [--endpoint chat|completions] [--no-stream] [--max-tokens N] [--system TEXT] \
        [--user TEXT | --user-file FILE] [--prompt TEXT] [--concurrent N] [--json]
"""

import argparse
import asyncio
import json
import sys

import openai


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base-url", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--endpoint", choices=["chat", "completions"], default="chat")
    p.add_argument("--no-stream", action="store_true", help="ask for the whole answer at once")
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--system", help="a system message before the user's")
    p.add_argument("--user", help="the user's message")
    p.add_argument("--user-file", help="a file holding the user's message (a long document)")
    p.add_argument("--prompt", help="the prompt of --endpoint completions")
    p.add_argument("--concurrent", type=int, default=0, help="run N streamed requests at once")
    p.add_argument("--json", action="store_true", help="print the text, finish reason and usage as JSON")
    args = p.parse_args()
    if args.user_file:
        with open(args.user_file, encoding="utf-8") as f:
            args.user = f.read()
    if args.endpoint == "chat" and args.user is None:
        p.error("--endpoint chat needs --user or --user-file")
    if args.endpoint == "completions" and args.prompt is None:
        p.error("--endpoint completions needs --prompt")
    return args


def request(args, stream):
    common = dict(model=args.model, max_tokens=args.max_tokens, temperature=args.temperature, stream=stream)
    if stream:
        common["stream_options"] = {"include_usage": True}
    if args.endpoint == "completions":
        return "completions", dict(prompt=args.prompt, **common)
    messages = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    messages.append({"role": "user", "content": args.user})
    return "chat", dict(messages=messages, **common)


def text_of(kind, choice, stream):
    if kind == "completions":
        return choice.text or ""
    if stream:
        return choice.delta.content or ""
    return choice.message.content or ""


def usage_of(usage):
    if usage is None:
        return None
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens}


def collect(kind, events):
    """Joins the chunks of a stream: text, the finish reason, the usage chunk, how many chunks."""
    out = {"text": "", "finish_reason": None, "usage": None, "chunks": 0}
    for chunk in events:
        out["chunks"] += 1
        for choice in chunk.choices:
            out["text"] += text_of(kind, choice, True)
            if choice.finish_reason is not None:
                out["finish_reason"] = choice.finish_reason
        if chunk.usage is not None:
            out["usage"] = usage_of(chunk.usage)
    return out


def run_one(args):
    client = openai.OpenAI(base_url=args.base_url, api_key="unused", max_retries=0)
    kind, body = request(args, not args.no_stream)
    api = client.completions if kind == "completions" else client.chat.completions
    if args.no_stream:
        answer = api.create(**body)
        choice = answer.choices[0]
        return {"text": text_of(kind, choice, False), "finish_reason": choice.finish_reason,
                "usage": usage_of(answer.usage), "chunks": 0}
    return collect(kind, api.create(**body))


async def run_concurrent(args):
    client = openai.AsyncOpenAI(base_url=args.base_url, api_key="unused", max_retries=0)
    kind, body = request(args, True)
    api = client.completions if kind == "completions" else client.chat.completions

    async def one():
        out = {"text": "", "finish_reason": None, "usage": None, "chunks": 0}
        async for chunk in await api.create(**body):
            out["chunks"] += 1
            for choice in chunk.choices:
                out["text"] += text_of(kind, choice, True)
                if choice.finish_reason is not None:
                    out["finish_reason"] = choice.finish_reason
            if chunk.usage is not None:
                out["usage"] = usage_of(chunk.usage)
        return out

    return list(await asyncio.gather(*(one() for _ in range(args.concurrent))))


def main():
    args = parse_args()
    try:
        result = asyncio.run(run_concurrent(args)) if args.concurrent > 0 else run_one(args)
    except openai.APIError as e:
        print(f"openai_client: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, ensure_ascii=True))
    elif isinstance(result, list):
        for r in result:
            print(r["text"])
    else:
        sys.stdout.write(result["text"])
        sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
