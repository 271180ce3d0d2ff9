package main

import (
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// versionText describes the build: the module version (v1.2.3, or "(devel)" for a build
// from a work tree), the VCS revision and time when the build recorded them, and the Go
// version, from runtime/debug.ReadBuildInfo.
func versionText(info *debug.BuildInfo, ok bool) string {
	if !ok || info == nil {
		return "outbox (no build information)"
	}
	version := info.Main.Version
	if version == "" {
		version = "(devel)"
	}
	var revision, when string
	modified := false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			revision = s.Value
		case "vcs.time":
			when = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "outbox %s", version)
	if revision != "" {
		fmt.Fprintf(&b, ", revision %s", revision)
		if modified {
			b.WriteString(" (modified)")
		}
		if when != "" {
			fmt.Fprintf(&b, " of %s", when)
		}
	}
	fmt.Fprintf(&b, ", %s", info.GoVersion)
	return b.String()
}

func (a *app) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version and VCS revision of this build",
		Args:  noArgs,
		RunE: func(*cobra.Command, []string) error {
			fmt.Fprintln(a.stdout, versionText(debug.ReadBuildInfo()))
			return nil
		},
	}
}
