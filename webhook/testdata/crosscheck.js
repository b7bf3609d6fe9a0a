// Cross-checks idem's webhook signatures against the standardwebhooks npm
// package (an independent implementation). Reads a JSON array of cases on
// stdin and writes a JSON array of results:
//   {op: "sign", secret, id, timestamp, payload}   -> {signature}
//   {op: "verify", secret, payload, headers}       -> {ok, error}
const { Webhook } = require("./standardwebhooks/node_modules/standardwebhooks");

let input = "";
process.stdin.on("data", (d) => (input += d));
process.stdin.on("end", () => {
  const out = JSON.parse(input).map((c) => {
    try {
      const wh = new Webhook(c.secret);
      if (c.op === "sign") {
        return { signature: wh.sign(c.id, new Date(c.timestamp * 1000), c.payload) };
      }
      wh.verify(c.payload, c.headers);
      return { ok: true };
    } catch (e) {
      return { ok: false, error: String(e && e.message ? e.message : e) };
    }
  });
  process.stdout.write(JSON.stringify(out));
});
