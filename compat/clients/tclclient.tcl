# Tcl's http package for compat/run-compat.
#
# usage: tclsh tclclient.tcl URL...   (or: version)
#
# http::geturl with the package's defaults (-keepalive 0: one connection
# per request). Prints per request:
#   RESULT <i> <status> <body length> <md5 of body>
#   ERROR <i> <message>
package require http
if {[lindex $argv 0] eq "version"} {
    puts "Tcl [info patchlevel], http [package require http]"
    exit 0
}
set i 0
foreach u $argv {
    incr i
    if {[catch {set t [http::geturl $u -binary 1 -timeout 300000]} e]} {
        puts "ERROR $i [string map {"\n" " "} $e]"
        continue
    }
    set st [http::status $t]
    if {$st ne "ok"} {
        puts "ERROR $i status $st [http::error $t]"
        http::cleanup $t
        continue
    }
    set b [http::data $t]
    set f [open "|md5sum" r+]
    fconfigure $f -translation binary
    puts -nonewline $f $b
    close $f write
    set m [lindex [read $f] 0]
    close $f
    puts "RESULT $i [http::ncode $t] [string length $b] $m"
    http::cleanup $t
}
