#!/usr/bin/perl
# Perl clients for compat/run-compat.
#
# usage: perlclients.pl lwp|lwp-ka|tiny|mojo URL...   (or: version MODE)
#
# lwp: LWP::UserAgent->new (no keep-alive, its default); lwp-ka: with
# keep_alive => 1 (a connection cache); tiny: HTTP::Tiny->new (keep-alive
# by default); mojo: Mojo::UserAgent->new (keep-alive). Prints per request:
#   RESULT <i> <status> <body length> <md5 of body>
#   ERROR <i> <message>
use strict;
use warnings;
use Digest::MD5 qw(md5_hex);

my ($mode, @urls) = @ARGV;
# COMPAT_UPLOAD=PUT|POST (and COMPAT_UPLOAD_FILE): the first request sends
# that file as its body with "Expect: 100-continue" (tiny, mojo)
my $UP = $ENV{COMPAT_UPLOAD};
my $UPBODY;
if ($UP) { open(my $fh, '<:raw', $ENV{COMPAT_UPLOAD_FILE}) or die; local $/; $UPBODY = <$fh>; close $fh; }
$| = 1;

sub res { my ($i, $st, $b) = @_; print "RESULT $i $st ", length($b), " ", md5_hex($b), "\n"; }
sub err { my ($i, $m) = @_; $m =~ s/\s+/ /g; print "ERROR $i $m\n"; }

if ($mode eq 'version') {
    my $w = $urls[0];
    if ($w =~ /^lwp/) { require LWP::UserAgent; print "LWP::UserAgent $LWP::UserAgent::VERSION, perl $^V\n"; }
    elsif ($w eq 'tiny') { require HTTP::Tiny; print "HTTP::Tiny $HTTP::Tiny::VERSION, perl $^V\n"; }
    else { require Mojolicious; print "Mojolicious $Mojolicious::VERSION, perl $^V\n"; }
    exit 0;
}
if ($mode =~ /^lwp/) {
    require LWP::UserAgent;
    my $ua = LWP::UserAgent->new(timeout => 300, ($mode eq 'lwp-ka' ? (keep_alive => 1) : ()));
    my $i = 0;
    for my $u (@urls) {
        $i++;
        my $r = eval { $ua->get($u) };
        if (!$r) { err($i, $@); next; }
        if ($r->header('Client-Warning') && $r->code >= 500) {
            err($i, $r->status_line . " " . ($r->header('X-Died') || ''));
            next;
        }
        res($i, $r->code, $r->content);
    }
} elsif ($mode eq 'tiny') {
    require HTTP::Tiny;
    my $ua = HTTP::Tiny->new(timeout => 300);
    my $i = 0;
    for my $u (@urls) {
        $i++;
        my $r = ($i == 1 && $UP)
            ? $ua->request($UP, $u, { content => $UPBODY, headers => { Expect => '100-continue' } })
            : $ua->get($u);
        if ($r->{status} == 599) { err($i, "599 $r->{content}"); next; }
        res($i, $r->{status}, $r->{content});
    }
} elsif ($mode eq 'mojo') {
    require Mojo::UserAgent;
    my $ua = Mojo::UserAgent->new(request_timeout => 300, inactivity_timeout => 300);
    my $i = 0;
    for my $u (@urls) {
        $i++;
        my $tx = ($i == 1 && $UP)
            ? $ua->start($ua->build_tx($UP => $u => { Expect => '100-continue' } => $UPBODY))
            : $ua->get($u);
        my $e = $tx->error;
        if ($e && !$e->{code}) { err($i, $e->{message}); next; }
        res($i, $tx->res->code, $tx->res->body);
    }
}
exit 0;
