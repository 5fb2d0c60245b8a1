// An MCP server built with the official TypeScript SDK that records the headers of every request it
// receives and answers them through its one tool, `seen-headers`: what a test asserts the gateway
// forwards (its own credential at this server, never the client's token, cookies or session id).
// Stateless streamable HTTP, JSON answers, bound to loopback. Usage: node header-echo-server.mjs <port>
// [<userinfo URL>]: with a userinfo endpoint it acts on people's own accounts, as servers behind
// per-person OAuth do: a request without a bearer token that endpoint accepts gets 401 with a Bearer
// challenge, and its `whoami` tool answers the token's `sub`.
import http from "node:http";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";

const port = Number(process.argv[2]);
const userinfo = process.argv[3];
const seen = [];

// The person behind a request's bearer token, as the authorization server's userinfo endpoint says.
async function person(req) {
  const token = /^Bearer (.+)$/i.exec(req.headers.authorization ?? "")?.[1];
  if (!token) return undefined;
  const answer = await fetch(userinfo, { headers: { authorization: `Bearer ${token}` } });
  return answer.ok ? (await answer.json()).sub : undefined;
}

function server(sub) {
  const mcp = new McpServer({ name: "header-echo", version: "1.0.0" });
  if (userinfo) {
    mcp.registerTool("whoami", { description: "The person whose token this request carries." }, async () => ({
      content: [{ type: "text", text: sub }],
    }));
  }
  mcp.registerTool("seen-headers", { description: "The headers of every request received so far." }, async () => ({
    content: [{ type: "text", text: JSON.stringify(seen) }],
  }));
  return mcp;
}

http
  .createServer(async (req, res) => {
    seen.push(req.headers);
    const sub = userinfo ? await person(req) : undefined;
    if (userinfo && !sub) {
      res.writeHead(401, { "www-authenticate": 'Bearer error="invalid_token"', "content-type": "application/json" });
      res.end(JSON.stringify({ error: "invalid_token" }));
      return;
    }
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
    const mcp = server(sub);
    res.on("close", () => {
      transport.close();
      mcp.close();
    });
    await mcp.connect(transport);
    await transport.handleRequest(req, res);
  })
  .listen(port, "127.0.0.1", () => console.log(`listening ${port}`));
