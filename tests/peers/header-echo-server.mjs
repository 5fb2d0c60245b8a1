// An MCP server built with the official TypeScript SDK that records the headers of every request it
// receives and answers them through its one tool, `seen-headers`: what a test asserts the gateway
// forwards (its own credential at this server, never the client's token, cookies or session id).
// Stateless streamable HTTP, JSON answers, bound to loopback. Usage: node header-echo-server.mjs <port>
import http from "node:http";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";

const port = Number(process.argv[2]);
const seen = [];

function server() {
  const mcp = new McpServer({ name: "header-echo", version: "1.0.0" });
  mcp.registerTool("seen-headers", { description: "The headers of every request received so far." }, async () => ({
    content: [{ type: "text", text: JSON.stringify(seen) }],
  }));
  return mcp;
}

http
  .createServer(async (req, res) => {
    seen.push(req.headers);
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
    const mcp = server();
    res.on("close", () => {
      transport.close();
      mcp.close();
    });
    await mcp.connect(transport);
    await transport.handleRequest(req, res);
  })
  .listen(port, "127.0.0.1", () => console.log(`listening ${port}`));
