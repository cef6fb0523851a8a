// Command swarm-agent turns an EC2 instance into a Docker Swarm node and takes it out again.
package main

import (
	"os"

	"github.com/swarm-agent/swarm-agent/agent"
)

func main() { os.Exit(agent.Main(os.Args[1:])) }
