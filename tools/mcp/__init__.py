"""MCP servers as tools: the operator's config, sessions per user, and tools behind the same approval gate."""

from tools.mcp.config import McpConfigError, ServerConfig, load_config, parse_config
from tools.mcp.servers import McpServer, McpServers, ServerStatus
from tools.mcp.tooldefs import McpTool

__all__ = ["McpConfigError", "McpServer", "McpServers", "McpTool", "ServerConfig", "ServerStatus", "load_config",
           "parse_config"]
