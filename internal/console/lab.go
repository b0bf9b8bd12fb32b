package console

import "github.com/spf13/cobra"

// NewLabCommand is replaced by the lab work; this placeholder keeps the tree building.
func NewLabCommand() *cobra.Command {
	return &cobra.Command{Use: "lab", Short: "not built yet"}
}
